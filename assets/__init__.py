"""Asset modules in the order data flows: extract -> transform -> upload; passback."""
