"""`python -m docker_ovs_plugin` runs the command line."""

from docker_ovs_plugin.cli import main

raise SystemExit(main())
