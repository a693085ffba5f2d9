"""Where the checkout is, for tests that run its programs or read its files."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
