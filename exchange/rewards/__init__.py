"""Cross-partner redemption: rewards partners publish, and members paying for them with any
linked program's points."""
