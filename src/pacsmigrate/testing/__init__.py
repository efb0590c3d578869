"""Test helpers for pacsmigrate (generated data sets)."""
