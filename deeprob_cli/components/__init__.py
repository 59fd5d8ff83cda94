"""One module per config group: the code behind conf/<group>/<option>.yaml."""
