"""What runs under any Kedro runner: discovery, the factory, node callables, parameters, selection, the ledger and the card."""
