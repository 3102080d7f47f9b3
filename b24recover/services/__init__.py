"""The recovery rules, in plain Python: no typer, no rich."""
