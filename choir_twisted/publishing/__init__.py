"""Recordings and uploads made media: jobs planned, results kept and served, webhooks."""
