"""Unlinking a member's account at a program, and the rules that keep it safe."""
