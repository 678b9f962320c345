"""The stack's development and test tooling: a dev-only dependency (the root project's `dev`
group), never a dependency of a service, so that no production image contains it."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
"""The checkout devstack works on (the launcher serves its files, the builders write into it):
devstack is a workspace member, installed editable from the checkout, never as a wheel."""
