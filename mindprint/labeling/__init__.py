"""mindprint.labeling — see ARCHITECTURE.md; built in later issues."""
