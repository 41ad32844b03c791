"""`mlrollouts simulate`: how often a manifest rolls back a healthy model, and how often it catches a bad one."""

from mlrollouts.simulation.runner import RunResult, Summary, horizon, planned_length, run_once, simulate
from mlrollouts.simulation.traffic import TrafficModel

__all__ = ["RunResult", "Summary", "TrafficModel", "horizon", "planned_length", "run_once", "simulate"]
