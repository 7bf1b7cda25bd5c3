"""The fleet's on-VM agent: runs a role's jobs once per date, reports on tags, stops the VM."""
