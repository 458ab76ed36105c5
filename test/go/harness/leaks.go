package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// under tells whether p is dir or inside it.
func under(p, dir string) bool {
	dir = strings.TrimSuffix(dir, "/")
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func resolved(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// Mount is one line of /proc/self/mountinfo.
type Mount struct{ Point, FSType, Source string }

// unescape undoes mountinfo's octal escapes (\040 for a space…).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Mounts lists the mounts of this process's namespace.
func Mounts() ([]Mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []Mount
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			continue
		}
		out = append(out, Mount{Point: unescape(f[4]), FSType: f[sep+1], Source: unescape(f[sep+2])})
	}
	return out, nil
}

// releaseMounts unmounts (lazily, deepest first) every mount whose mount
// point or source is under one of dirs, and describes each.
func releaseMounts(dirs ...string) []string {
	ms, err := Mounts()
	if err != nil {
		return []string{"cannot read mountinfo: " + err.Error()}
	}
	var hit []Mount
	for _, m := range ms {
		for _, d := range dirs {
			if under(m.Point, d) || under(m.Source, d) {
				hit = append(hit, m)
				break
			}
		}
	}
	sort.Slice(hit, func(i, j int) bool { return len(hit[i].Point) > len(hit[j].Point) })
	var out []string
	for _, m := range hit {
		out = append(out, fmt.Sprintf("mount %s (%s from %s)", m.Point, m.FSType, m.Source))
		_ = syscall.Unmount(m.Point, syscall.MNT_DETACH)
	}
	return out
}

// LoopsUnder maps /dev/loopN to its backing file for backing files under one of dirs.
func LoopsUnder(dirs ...string) map[string]string {
	res := map[string]string{}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, bf := range files {
		b, err := os.ReadFile(bf)
		if err != nil {
			continue
		}
		backing := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		for _, d := range dirs {
			if under(backing, d) {
				res["/dev/"+filepath.Base(filepath.Dir(filepath.Dir(bf)))] = backing
				break
			}
		}
	}
	return res
}

const loopClrFd = 0x4C01 // LOOP_CLR_FD

func detachLoop(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), loopClrFd, 0); e != 0 {
		return e
	}
	return nil
}

// dmNames maps dm-N to its device-mapper name, read from sysfs (no dmsetup).
func dmNames() map[string]bool {
	out := map[string]bool{}
	for _, d := range dmDevices() {
		out[d.name] = true
	}
	return out
}

type dmDev struct {
	kname string // dm-N
	name  string
}

func dmDevices() []dmDev {
	files, _ := filepath.Glob("/sys/block/dm-*/dm/name")
	var out []dmDev
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		out = append(out, dmDev{kname: filepath.Base(filepath.Dir(filepath.Dir(f))), name: strings.TrimSpace(string(b))})
	}
	return out
}

func sysList(kname, sub string) []string {
	ents, _ := os.ReadDir(filepath.Join("/sys/block", kname, sub))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// loopsBelow lists the loop devices a block device sits on, through its
// slaves in sysfs (a thin volume -> its pool -> the pool's loop devices).
func loopsBelow(kname string, seen map[string]bool) []string {
	if seen[kname] {
		return nil
	}
	seen[kname] = true
	if strings.HasPrefix(kname, "loop") {
		return []string{"/dev/" + kname}
	}
	var out []string
	for _, s := range sysList(kname, "slaves") {
		out = append(out, loopsBelow(s, seen)...)
	}
	return out
}

// newDMDevices lists the dm devices that appeared since the server started
// and belong to this case: those on loop devices backed by files under its
// dirs, or on no loop device at all (other cases running at the same time
// have their pools on their own roots' files).
func (s *Server) newDMDevices(loops map[string]string) []dmDev {
	var out []dmDev
	for _, d := range dmDevices() {
		if s.dmBefore[d.name] {
			continue
		}
		below := loopsBelow(d.kname, map[string]bool{})
		mine := len(below) == 0
		for _, l := range below {
			if _, ok := loops[l]; ok {
				mine = true
			}
		}
		if mine {
			out = append(out, d)
		}
	}
	return out
}

// dm_ioctl as in linux/dm-ioctl.h: 312 bytes.
type dmIoctl struct {
	Version     [3]uint32
	DataSize    uint32
	DataStart   uint32
	TargetCount uint32
	OpenCount   int32
	Flags       uint32
	EventNr     uint32
	Padding     uint32
	Dev         uint64
	Name        [128]byte
	UUID        [129]byte
	Data        [7]byte
}

const dmDevRemove = 0xC138FD04 // _IOWR(0xfd, DM_DEV_REMOVE_CMD=4, struct dm_ioctl)

// removeDM removes a device-mapper device by name through /dev/mapper/control.
func removeDM(name string) error {
	ctl, err := os.OpenFile("/dev/mapper/control", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer ctl.Close()
	var io dmIoctl
	io.Version = [3]uint32{4, 0, 0}
	io.DataSize = uint32(unsafe.Sizeof(io))
	io.DataStart = uint32(unsafe.Sizeof(io))
	copy(io.Name[:len(io.Name)-1], name)
	var lastErr error
	for i := 0; i < 20; i++ {
		_, _, e := syscall.Syscall(syscall.SYS_IOCTL, ctl.Fd(), dmDevRemove, uintptr(unsafe.Pointer(&io)))
		if e == 0 {
			_ = os.Remove("/dev/mapper/" + name) // no udev: the node is whoever made it's
			return nil
		}
		lastErr = e
		if e != syscall.EBUSY {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return lastErr
}

// releaseDM removes devices holders first (thin volumes before their pool).
func releaseDM(devs []dmDev) []string {
	var out []string
	left := append([]dmDev(nil), devs...)
	for pass := 0; pass < 8 && len(left) > 0; pass++ {
		var next []dmDev
		for _, d := range left {
			if len(sysList(d.kname, "holders")) > 0 && pass < 7 {
				next = append(next, d)
				continue
			}
			if err := removeDM(d.name); err != nil {
				out = append(out, fmt.Sprintf("dm device %s (%s) could not be removed: %v", d.name, d.kname, err))
			}
		}
		left = next
	}
	return out
}

// ReleaseLeaks runs after the server stopped. Mounts under SuiteDir/work are
// the suite's own (a failing case stops with them in place): they are
// released and noted, not blamed on the server. Then, in order: mounts under
// the root or the harness's scratch dirs, device-mapper devices that
// appeared during the case on this case's files, loop devices on files under
// the root, and files left in the server's socket dir and TMPDIR. Each is
// released and returned as a leak.
func (s *Server) ReleaseLeaks() []string {
	suiteDir := resolved(s.SuiteDir)
	scratch := resolved(s.scratch)
	if own := releaseMounts(filepath.Join(suiteDir, "work")); len(own) > 0 {
		s.Notes = append(s.Notes, "suite's own mounts released: "+strings.Join(own, "; "))
		// autoclear loop devices go once their (lazily unmounted) users are gone
		deadline := time.Now().Add(5 * time.Second)
		for len(LoopsUnder(suiteDir)) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	var leaks []string
	leaks = append(leaks, releaseMounts(suiteDir, scratch)...)
	loops := LoopsUnder(suiteDir, scratch)
	if len(leaks) > 0 && len(loops) > 0 {
		// a lazily unmounted autoclear loop goes away by itself
		time.Sleep(500 * time.Millisecond)
	}
	devs := s.newDMDevices(loops)
	for _, d := range devs {
		leaks = append(leaks, fmt.Sprintf("dm device %s (%s)", d.name, d.kname))
	}
	leaks = append(leaks, releaseDM(devs)...)
	if len(devs) > 0 {
		time.Sleep(200 * time.Millisecond)
	}
	loops = LoopsUnder(suiteDir, scratch)
	var lk []string
	for dev, backing := range loops {
		msg := fmt.Sprintf("loop device %s on %s", dev, backing)
		if err := detachLoop(dev); err != nil {
			msg += fmt.Sprintf(" (detach failed: %v)", err)
		}
		lk = append(lk, msg)
	}
	sort.Strings(lk)
	leaks = append(leaks, lk...)
	for _, d := range []string{s.sockDir, s.tmpDir} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			leaks = append(leaks, fmt.Sprintf("file %s left outside the root", filepath.Join(d, e.Name())))
		}
	}
	return leaks
}
