//go:build !(linux && amd64)

package supervise

import "errors"

func startGuardian(parent int, dir string) (int, error) {
	return 0, errors.New("not supported on this architecture")
}
