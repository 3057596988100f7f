"""drdeck demo: a sandbox to drill on, in a minute, on your own machine."""
