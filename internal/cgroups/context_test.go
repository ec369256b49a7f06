package cgroups

import (
	"strings"
	"testing"
)

// Container ids and pod UIDs made up for these tests, in the shapes runtimes use.
const (
	id1 = "3f6c1a0e9b7d42c58e21f0a4d6b9c3e7a1f5d8b2c6e9a0f3b7d1c4e8a2f6b9d0"
	id2 = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1"
	pod = "5e2d8c1a-7b3f-4e9d-a6c0-1f8b2e4d7a93"
)

var podMangled = strings.ReplaceAll(pod, "-", "_")

func TestDescribe(t *testing.T) {
	none := Container{Runtime: RuntimeNone}
	tests := []struct {
		name string
		path string
		want Context
	}{
		{"root", "/", Context{Container: none}},
		{"empty", "", Context{Container: none}},
		{"init scope", "/init.scope", Context{Unit: "init.scope", Container: none}},
		{"system service", "/system.slice/cron.service", Context{Unit: "cron.service", Slice: "system.slice", Container: none}},
		{"template instance", "/system.slice/system-getty.slice/getty@tty1.service",
			Context{Unit: "getty@tty1.service", Slice: "system-getty.slice", Container: none}},
		{"escaped instance", `/system.slice/system-systemd\x2dfsck.slice/systemd-fsck@dev-disk-by\x2duuid-1234.service`,
			Context{Unit: `systemd-fsck@dev-disk-by\x2duuid-1234.service`, Slice: `system-systemd\x2dfsck.slice`, Container: none}},
		{"socket", "/system.slice/dbus.socket", Context{Unit: "dbus.socket", Slice: "system.slice", Container: none}},
		{"mount", "/system.slice/home.mount", Context{Unit: "home.mount", Slice: "system.slice", Container: none}},
		{"slice only", "/system.slice", Context{Slice: "system.slice", Container: none}},
		{"delegated sub-cgroup", "/system.slice/myd.service/workers/w1",
			Context{Unit: "myd.service", Slice: "system.slice", Container: none}},
		{"session scope", "/user.slice/user-1000.slice/session-3.scope",
			Context{Unit: "session-3.scope", Slice: "user-1000.slice", Container: none}},
		{"user manager itself", "/user.slice/user-1000.slice/user@1000.service/init.scope",
			Context{Unit: "init.scope", Slice: "user-1000.slice", UserManager: "user@1000.service", Container: none}},
		{"user unit", "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4242.scope",
			Context{Unit: "app-gnome-firefox-4242.scope", Slice: "app.slice", UserManager: "user@1000.service", Container: none}},
		{"user service", "/user.slice/user-1000.slice/user@1000.service/session.slice/pipewire.service",
			Context{Unit: "pipewire.service", Slice: "session.slice", UserManager: "user@1000.service", Container: none}},
		{"user manager sub-tree only", "/user.slice/user-1000.slice/user@1000.service",
			Context{Unit: "user@1000.service", Slice: "user-1000.slice", Container: none}},
		{"not a user manager", "/system.slice/user@x.service/app.slice/a.service",
			Context{Unit: "a.service", Slice: "app.slice", Container: none}},

		// docker
		{"docker cgroupfs", "/docker/" + id1,
			Context{Container: Container{Runtime: RuntimeDocker, ID: id1}}},
		{"docker systemd", "/system.slice/docker-" + id1 + ".scope",
			Context{Unit: "docker-" + id1 + ".scope", Slice: "system.slice", Container: Container{Runtime: RuntimeDocker, ID: id1}}},
		{"docker in docker", "/docker/" + id1 + "/docker/" + id2,
			Context{Container: Container{Runtime: RuntimeDocker, ID: id2}}},
		{"docker with systemd inside", "/system.slice/docker-" + id1 + ".scope/system.slice/nginx.service",
			Context{Unit: "nginx.service", Slice: "system.slice", Container: Container{Runtime: RuntimeDocker, ID: id1}}},
		{"docker daemon itself", "/system.slice/docker.service", Context{Unit: "docker.service", Slice: "system.slice", Container: none}},
		{"docker- short id is not a container", "/system.slice/docker-abc.scope",
			Context{Unit: "docker-abc.scope", Slice: "system.slice", Container: none}},

		// containerd
		{"cri-containerd", "/system.slice/cri-containerd-" + id1 + ".scope",
			Context{Unit: "cri-containerd-" + id1 + ".scope", Slice: "system.slice", Container: Container{Runtime: RuntimeContainerd, ID: id1}}},
		{"nerdctl", "/system.slice/nerdctl-" + id1 + ".scope",
			Context{Unit: "nerdctl-" + id1 + ".scope", Slice: "system.slice", Container: Container{Runtime: RuntimeContainerd, ID: id1}}},
		{"ctr cgroupfs namespace/id", "/default/" + id1,
			Context{Container: Container{Runtime: RuntimeUnknown, ID: id1}}},
		{"containerd service itself", "/system.slice/containerd.service",
			Context{Unit: "containerd.service", Slice: "system.slice", Container: none}},

		// cri-o
		{"crio scope", "/machine.slice/crio-" + id1 + ".scope",
			Context{Unit: "crio-" + id1 + ".scope", Slice: "machine.slice", Container: Container{Runtime: RuntimeCRIO, ID: id1}}},
		{"crio scope container sub-cgroup", "/machine.slice/crio-" + id1 + ".scope/container",
			Context{Unit: "crio-" + id1 + ".scope", Slice: "machine.slice", Container: Container{Runtime: RuntimeCRIO, ID: id1}}},
		{"crio conmon", "/machine.slice/crio-conmon-" + id1 + ".scope",
			Context{Unit: "crio-conmon-" + id1 + ".scope", Slice: "machine.slice", Container: Container{Runtime: RuntimeCRIO, ID: id1, Role: "conmon"}}},

		// podman
		{"podman systemd", "/machine.slice/libpod-" + id1 + ".scope",
			Context{Unit: "libpod-" + id1 + ".scope", Slice: "machine.slice", Container: Container{Runtime: RuntimePodman, ID: id1}}},
		{"podman systemd container sub-cgroup", "/machine.slice/libpod-" + id1 + ".scope/container",
			Context{Unit: "libpod-" + id1 + ".scope", Slice: "machine.slice", Container: Container{Runtime: RuntimePodman, ID: id1}}},
		{"podman conmon scope", "/machine.slice/libpod-conmon-" + id1 + ".scope",
			Context{Unit: "libpod-conmon-" + id1 + ".scope", Slice: "machine.slice", Container: Container{Runtime: RuntimePodman, ID: id1, Role: "conmon"}}},
		{"podman pod", "/machine.slice/machine-libpod_pod_" + id2 + ".slice/libpod-" + id1 + ".scope",
			Context{Unit: "libpod-" + id1 + ".scope", Slice: "machine-libpod_pod_" + id2 + ".slice", Container: Container{Runtime: RuntimePodman, ID: id1}}},
		{"podman cgroupfs", "/libpod_parent/libpod-" + id1,
			Context{Container: Container{Runtime: RuntimePodman, ID: id1}}},
		{"podman cgroupfs conmon", "/libpod_parent/conmon",
			Context{Container: Container{Runtime: RuntimePodman, Role: "conmon"}}},
		{"rootless podman", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id1 + ".scope",
			Context{Unit: "libpod-" + id1 + ".scope", Slice: "user.slice", UserManager: "user@1000.service", Container: Container{Runtime: RuntimePodman, ID: id1}}},
		{"conmon elsewhere is nothing", "/system.slice/conmon", Context{Slice: "system.slice", Container: none}},

		// lxc
		{"lxc payload", "/lxc.payload.web1", Context{Container: Container{Runtime: RuntimeLXC, ID: "web1"}}},
		{"lxc monitor", "/lxc.monitor.web1", Context{Container: Container{Runtime: RuntimeLXC, ID: "web1", Role: "monitor"}}},

		// plain runc with any cgroupsPath
		{"runc hex leaf", "/mycontainers/" + id1, Context{Container: Container{Runtime: RuntimeUnknown, ID: id1}}},
		{"runc named leaf is not clearly a container", "/mycontainers/web", Context{Container: none}},
		{"uppercase hex is not an id", "/x/" + strings.ToUpper(id1), Context{Container: none}},
		{"63 hex is not an id", "/x/" + id1[:63], Context{Container: none}},

		// kubepods, cgroupfs driver
		{"k8s cgroupfs guaranteed", "/kubepods/pod" + pod + "/" + id1,
			Context{Container: Container{Runtime: RuntimeUnknown, ID: id1, PodUID: pod, QoS: QoSGuaranteed}}},
		{"k8s cgroupfs burstable", "/kubepods/burstable/pod" + pod + "/" + id1,
			Context{Container: Container{Runtime: RuntimeUnknown, ID: id1, PodUID: pod, QoS: QoSBurstable}}},
		{"k8s cgroupfs besteffort", "/kubepods/besteffort/pod" + pod + "/" + id1,
			Context{Container: Container{Runtime: RuntimeUnknown, ID: id1, PodUID: pod, QoS: QoSBestEffort}}},
		{"k8s cgroupfs crio", "/kubepods/besteffort/pod" + pod + "/crio-" + id1,
			Context{Container: Container{Runtime: RuntimeCRIO, ID: id1, PodUID: pod, QoS: QoSBestEffort}}},
		{"k8s cgroupfs crio conmon", "/kubepods/burstable/pod" + pod + "/crio-conmon-" + id1,
			Context{Container: Container{Runtime: RuntimeCRIO, ID: id1, Role: "conmon", PodUID: pod, QoS: QoSBurstable}}},
		{"k8s pod level", "/kubepods/burstable/pod" + pod,
			Context{Container: Container{Runtime: RuntimeUnknown, PodUID: pod, QoS: QoSBurstable}}},
		{"k8s qos level only", "/kubepods/burstable", Context{Container: none}},
		{"k8s in kind (nested in docker)", "/docker/" + id2 + "/kubelet/kubepods/burstable/pod" + pod + "/" + id1,
			Context{Container: Container{Runtime: RuntimeUnknown, ID: id1, PodUID: pod, QoS: QoSBurstable}}},
		{"pod dir outside kubepods", "/other/pod" + pod + "/" + id1,
			Context{Container: Container{Runtime: RuntimeUnknown, ID: id1}}},

		// kubepods, systemd driver
		{"k8s systemd guaranteed containerd", "/kubepods.slice/kubepods-pod" + podMangled + ".slice/cri-containerd-" + id1 + ".scope",
			Context{Unit: "cri-containerd-" + id1 + ".scope", Slice: "kubepods-pod" + podMangled + ".slice",
				Container: Container{Runtime: RuntimeContainerd, ID: id1, PodUID: pod, QoS: QoSGuaranteed}}},
		{"k8s systemd burstable crio", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podMangled + ".slice/crio-" + id1 + ".scope",
			Context{Unit: "crio-" + id1 + ".scope", Slice: "kubepods-burstable-pod" + podMangled + ".slice",
				Container: Container{Runtime: RuntimeCRIO, ID: id1, PodUID: pod, QoS: QoSBurstable}}},
		{"k8s systemd besteffort docker", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podMangled + ".slice/docker-" + id1 + ".scope",
			Context{Unit: "docker-" + id1 + ".scope", Slice: "kubepods-besteffort-pod" + podMangled + ".slice",
				Container: Container{Runtime: RuntimeDocker, ID: id1, PodUID: pod, QoS: QoSBestEffort}}},
		{"k8s systemd kubelet cgroup root", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod" + podMangled + ".slice/cri-containerd-" + id1 + ".scope",
			Context{Unit: "cri-containerd-" + id1 + ".scope", Slice: "kubelet-kubepods-burstable-pod" + podMangled + ".slice",
				Container: Container{Runtime: RuntimeContainerd, ID: id1, PodUID: pod, QoS: QoSBurstable}}},
		{"k8s systemd qos slice only", "/kubepods.slice/kubepods-burstable.slice",
			Context{Slice: "kubepods-burstable.slice", Container: none}},
		{"k8s static pod hash uid", "/kubepods/burstable/pod0123456789abcdef0123456789abcdef/" + id1,
			Context{Container: Container{Runtime: RuntimeUnknown, ID: id1, PodUID: "0123456789abcdef0123456789abcdef", QoS: QoSBurstable}}},
		{"not a kubepods slice", "/xkubepods-pod" + podMangled + ".slice",
			Context{Slice: "xkubepods-pod" + podMangled + ".slice", Container: none}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Describe(tt.path); got != tt.want {
				t.Errorf("Describe(%q)\n got %+v\nwant %+v", tt.path, got, tt.want)
			}
		})
	}
}

var knownRuntimes = map[string]bool{
	RuntimeNone: true, RuntimeUnknown: true, RuntimeDocker: true, RuntimeContainerd: true,
	RuntimeCRIO: true, RuntimePodman: true, RuntimeLXC: true,
}

// FuzzDescribe checks what must hold for any path: no panic, a known
// runtime, names taken from the path itself, and no id outside a container.
func FuzzDescribe(f *testing.F) {
	for _, s := range []string{
		"/", "/system.slice/cron.service", "/docker/" + id1,
		"/user.slice/user-1000.slice/user@1000.service/app.slice/a.service",
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podMangled + ".slice/crio-" + id1 + ".scope",
		"/kubepods/besteffort/pod" + pod + "/" + id1, "/libpod_parent/conmon", "/lxc.payload.x",
		"//a//b.scope/./c.slice/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		c := Describe(path)
		parts := map[string]bool{}
		for _, p := range splitPath(path) {
			parts[p] = true
		}
		if c.Unit != "" && (!parts[c.Unit] || unitType(c.Unit) == "" || unitType(c.Unit) == ".slice") {
			t.Errorf("unit %q is not a non-slice unit component of %q", c.Unit, path)
		}
		if c.Slice != "" && (!parts[c.Slice] || unitType(c.Slice) != ".slice") {
			t.Errorf("slice %q is not a slice component of %q", c.Slice, path)
		}
		if c.UserManager != "" && (!parts[c.UserManager] || !isUserManager(c.UserManager)) {
			t.Errorf("user manager %q not in %q", c.UserManager, path)
		}
		k := c.Container
		if !knownRuntimes[k.Runtime] {
			t.Errorf("runtime %q unknown", k.Runtime)
		}
		if k.Runtime == RuntimeNone && (k.ID != "" || k.Role != "" || k.PodUID != "" || k.QoS != "") {
			t.Errorf("%q: not a container but %+v", path, k)
		}
		if k.ID != "" && !strings.Contains(path, k.ID) {
			t.Errorf("id %q not in %q", k.ID, path)
		}
		if (k.PodUID == "") != (k.QoS == "") {
			t.Errorf("%q: pod uid %q with qos %q", path, k.PodUID, k.QoS)
		}
		if k.PodUID != "" && !strings.Contains(path, k.PodUID) && !strings.Contains(path, strings.ReplaceAll(k.PodUID, "-", "_")) {
			t.Errorf("pod uid %q not in %q", k.PodUID, path)
		}
	})
}
