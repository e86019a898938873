"""mindprint.api — see ARCHITECTURE.md; built in later issues."""
