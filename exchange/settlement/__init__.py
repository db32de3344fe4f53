"""Monthly settlement: closing periods, multilateral netting, signed statements, reconciliation."""
