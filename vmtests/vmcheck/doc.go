// Package vmcheck checks the machine the privileged tests run on: root, BTF,
// the modules and tools the other tests use, and that an iptables rule
// really drops bridged traffic. It runs on the host and in every vmtests VM,
// where it proves the VM is set up like a Docker host.
//
// HOPTRACE_VMTEST_BREAK=1 makes TestCanary fail: `HOPTRACE_VMTEST_BREAK=1
// make vmtest` must fail, which shows that a failing test fails the run.
package vmcheck
