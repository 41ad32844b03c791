"""One module per strategy; each takes a Tick whose samples and guardrails are already up to date."""
