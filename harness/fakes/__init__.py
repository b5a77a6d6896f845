"""Test doubles the stack runs in place of paid services (standard library only)."""
