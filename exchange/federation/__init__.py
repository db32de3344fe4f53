"""The federated view: a member's accounts at every linked partner, fetched live."""
