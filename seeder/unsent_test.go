package seeder

import (
	"log/slog"
	"net"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUnsentListener(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_NOTSENT_LOWAT is set on Linux only")
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := unsentListener{Listener: inner, log: slog.New(slog.DiscardHandler)}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT) })
	if gerr != nil || got != maxUnsent {
		t.Errorf("accepted connection: TCP_NOTSENT_LOWAT = %d (%v), want %d", got, gerr, maxUnsent)
	}
}
