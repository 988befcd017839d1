"""Test helpers: tiny real models, fixtures, local servers, transforms (importable as `helpers.*`)."""
