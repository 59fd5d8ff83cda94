"""The dataset kinds, one module each; conf/dataset/<kind>.yaml names its class as `_target_`, whose signature
declares every parameter and its range (deeprob_cli.validate), like the components. A new kind: its module here
(a Dataset subclass with read()) and its YAML."""
