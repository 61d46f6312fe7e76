"""Grade passback: Canvas gradebooks → OneRoster 1.1 categories, lineItems and results in the SIS."""
