"""mindprint.ledger — see ARCHITECTURE.md; built in later issues."""
