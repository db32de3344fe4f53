"""Risk gates on what leaves a member's account (conversions and redemptions), declared per
program, and the record of every decision."""
