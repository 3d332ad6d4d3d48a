"""Optional accelerators: patches of Flower's internals that shorten its fixed waits.

Valid for Flower 1.42.0 only: each refuses to run on any other version (they patch
private modules that may change in any release). The federation's behaviour does not
depend on them, only its speed: stock Flower runs the same rounds, more slowly.

- `fast_supernode`: Flower's SuperNode with a shorter idle poll than its fixed 3 s.
- `warm_executor`: ClientApp processes forked from a warm parent instead of started anew.

`deploy.flower_commands` starts them only when `LaunchConfig.supernode_idle_poll_s` and
`LaunchConfig.warm_clientapps` ask for them: `LaunchConfig`'s defaults run stock
`flower-supernode` and Flower's own ClientApp processes; `fl-crb federate` asks for both.
"""
