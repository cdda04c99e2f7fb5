"""What every layer of the flow shares: accumulator math, errors, configuration data, logging."""
