"""Sources and targets behind one protocol; one module per kind of endpoint."""
