// Package smoketest holds only tests: see smoketest_test.go. vmtest runs it
// in every guest, before the project's own packages, as proof that the VM
// itself is fit to run them.
package smoketest
