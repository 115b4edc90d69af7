"""Experiments, the end of the flow: suites of runs, their comparison report and plots, forecasts from a trained run."""
