"""Risk gates on conversions, declared per program, and the record of every decision."""
