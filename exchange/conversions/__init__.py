"""Conversions: moving a member's points from one program into another."""
