"""`mlrollouts demo`: a whole experiment on one machine, with real processes and compressed time.

models (a stand-in model server), traffic (simulated users who send feedback), scenarios (what each demo
proves and its timings), orchestrator (starts and always stops every process), live (terminal progress),
report (PNG plots and one HTML page from Prometheus range queries and the experiment's status).
"""
