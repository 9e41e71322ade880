"""Helpers the tests share: fixtures' building blocks, drivers of real servers, fakes, and scripts run as
child processes. No test module imports another test module; they all import from here."""
