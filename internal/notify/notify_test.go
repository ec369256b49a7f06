package notify

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const envRole = "ADOPTWATCH_NOTIFY_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(envRole) {
	case "exit42":
		os.Exit(42)
	case "queue":
		// Re-exec with the signals blocked in every thread, then check both readers.
		os.Setenv(envRole, "queue-blocked") // replace, not append: getenv takes the first
		if err := ExecBlocked(os.Environ(), RTMin+1, RTMin+2); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "queue-blocked":
		if err := queueToSelf(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseSignal(t *testing.T) {
	good := map[string]int{"37": 37, "RTMIN": 34, "rtmin+3": 37, "SIGRTMIN+3": 37, "RTMAX": 64,
		"SIGRTMAX-2": 62, "USR1": 10, "SIGUSR1": 10, "sigterm": 15}
	for in, want := range good {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "65", "RTMIN+31", "RTMAX+1", "RTMIN3", "RTMIN+x", "FOO"} {
		if got, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) = %d, want an error", in, got)
		}
	}
	for _, sig := range []int{34, 37, 50, 62, 64, 10, 15} {
		if back, err := ParseSignal(SignalName(sig)); err != nil || back != sig {
			t.Errorf("SignalName(%d) = %q does not parse back: %d, %v", sig, SignalName(sig), back, err)
		}
	}
}

func TestCheckSignal(t *testing.T) {
	if err := CheckSignal(RTMin+3, false); err != nil {
		t.Error(err)
	}
	if err := CheckSignal(int(unix.SIGUSR1), false); err == nil {
		t.Error("SIGUSR1 accepted without force")
	} else {
		t.Logf("refused as expected: %v", err)
	}
	if err := CheckSignal(int(unix.SIGUSR1), true); err != nil {
		t.Errorf("SIGUSR1 with force: %v", err)
	}
	for _, sig := range []int{int(unix.SIGKILL), int(unix.SIGSTOP)} {
		if CheckSignal(sig, true) == nil {
			t.Errorf("signal %d accepted even forced", sig)
		}
	}
	if CheckSignal(32, false) == nil || CheckSignal(33, false) == nil {
		t.Error("glibc's reserved realtime signals accepted without force")
	}
}

// TestSigchldStatusOffset checks the layout claim on the real kernel: the
// kernel writes a child's exit status (si_status of _sigchld) at the offset
// where QueueInfo puts the previous parent (sival_int of _rt).
func TestSigchldStatusOffset(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.StartProcess(exe, []string{exe}, &os.ProcAttr{Env: append(os.Environ(), envRole+"=exit42")})
	if err != nil {
		t.Fatal(err)
	}
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, p.Pid, &info, unix.WEXITED, nil); err != nil {
		t.Fatal(err)
	}
	raw := (*[SiginfoSize]byte)(unsafeBytes(&info))
	got := DecodeSiginfo(raw)
	if got.PID != uint32(p.Pid) || got.PrevParent != 42 || got.Signal != int(unix.SIGCHLD) {
		t.Errorf("waitid siginfo: signo %d pid %d status %d; want SIGCHLD, %d, 42", got.Signal, got.PID, got.PrevParent, p.Pid)
	}
	if code := int32(binary.LittleEndian.Uint32(raw[OffsetCode:])); code != 1 /* CLD_EXITED */ {
		t.Errorf("si_code %d, want CLD_EXITED", code)
	}
}

// TestQueueToSelf sends the ABI's siginfo to a re-executed copy of this test
// (signals blocked from exec on) and reads it back with sigtimedwait and signalfd.
func TestQueueToSelf(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envRole+"=queue")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

func queueToSelf() error {
	for _, sig := range []int{RTMin + 1, RTMin + 2} {
		if b, err := Blocked(sig); err != nil || !b {
			return fmt.Errorf("signal %d not blocked after exec (%v)", sig, err)
		}
	}
	self := os.Getpid()
	tgt, err := OpenTarget(self, RTMin+1)
	if err != nil {
		return err
	}
	defer tgt.Close()
	// Two queued signals of the same number both arrive, in order.
	if err := tgt.Notify(4242, 1000, 4241); err != nil {
		return fmt.Errorf("pidfd_send_signal: %w", err)
	}
	if err := NewQueueInfo(RTMin+1, 4343, 1001, 4342).queue(self); err != nil {
		return fmt.Errorf("rt_sigqueueinfo: %w", err)
	}
	for _, want := range []Info{{RTMin + 1, SIQueue, 4242, 1000, 4241}, {RTMin + 1, SIQueue, 4343, 1001, 4342}} {
		got, err := WaitInfo(time.Second, RTMin+1)
		if err != nil {
			return fmt.Errorf("sigtimedwait: %w", err)
		}
		if got != want {
			return fmt.Errorf("sigtimedwait read %+v, want %+v", got, want)
		}
	}
	if _, err := WaitInfo(10*time.Millisecond, RTMin+1); err != ErrTimeout {
		return fmt.Errorf("a third signal: %v", err)
	}
	sfd, err := OpenSignalfd(RTMin + 2)
	if err != nil {
		return err
	}
	defer sfd.Close()
	if err := NewQueueInfo(RTMin+2, 77, 7, 76).queue(self); err != nil {
		return err
	}
	got, err := sfd.Read(time.Second)
	if want := (Info{RTMin + 2, SIQueue, 77, 7, 76}); err != nil || got != want {
		return fmt.Errorf("signalfd read %+v, %v; want %+v", got, err, want)
	}
	return nil
}
