"""Argument parsing, secret input and rendering; one service call per command."""
