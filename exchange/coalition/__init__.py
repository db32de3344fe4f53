"""The coalition point: a program the exchange issues and keeps itself (docs/COALITION.md)."""
