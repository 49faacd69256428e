"""The stack config: read once (`load.load_settings`) into one frozen tree (`settings`), validated before
any resource is registered. `reader` is the one reader; `aws` and `kubernetes` hold each layer's keys."""
