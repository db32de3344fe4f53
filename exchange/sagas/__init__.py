"""What every saga of the exchange shares: its state columns, the step driver with leases and
in-doubt handling, and the recovery worker (conversions, redemptions, status matches)."""
