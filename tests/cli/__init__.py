"""Tests of modelserve.cli: the command line, one module per command group."""
