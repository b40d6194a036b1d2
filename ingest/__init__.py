"""The front of the data flow: the event contract, the collector, Fluent Bit configs, loadgen."""
