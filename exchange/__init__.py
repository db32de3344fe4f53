"""The coalition points exchange."""
