package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// TestCheckAgentConfig: `service install` refuses a config the agent could not start with, and
// takes Windows paths (backslashes, spaces, drive letters) as YAML plain values.
func TestCheckAgentConfig(t *testing.T) {
	windows := `data: C:\ProgramData\Peerpatch\agent
seeder: [http://updates.example.internal:8080]
trust: C:\ProgramData\Peerpatch\root.json
token-file: C:\ProgramData\Peerpatch\agent.token
channel: stable
install-dir: C:\Program Files\ExampleApp
`
	if err := checkAgentConfig(writeConfig(t, windows)); err != nil {
		t.Errorf("Windows paths: %v", err)
	}
	got, err := runRecorded(t, "agent", "--config", writeConfig(t, windows))
	if err != nil || got["install-dir"] != `C:\Program Files\ExampleApp` || got["data"] != `C:\ProgramData\Peerpatch\agent` {
		t.Errorf("Windows paths parsed as %q, %q (%v)", got["install-dir"], got["data"], err)
	}
	for _, tc := range []struct{ name, config, wantErr string }{
		{"required missing", strings.Replace(windows, "channel: stable\n", "", 1), `Required flag "channel"`},
		{"bad value", windows + "interval: often\n", `key "interval"`},
	} {
		if err := checkAgentConfig(writeConfig(t, tc.config)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.wantErr)
		}
	}
}

// TestServiceElsewhere: outside Windows, `peerpatch service` says what to use instead.
func TestServiceElsewhere(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows runs the service")
	}
	for _, sub := range [][]string{{"install", "--config", "agent.yaml"}, {"uninstall"}, {"run", "--config", "agent.yaml"}} {
		err := newApp(&bytes.Buffer{}, &bytes.Buffer{}).Run(append([]string{"peerpatch", "service"}, sub...))
		if err == nil || !strings.Contains(err.Error(), "peerpatch-agent.service") || !strings.Contains(err.Error(), "com.peerpatch.agent.plist") {
			t.Errorf("service %s: %v, want an error naming the systemd unit and the launchd job", sub[0], err)
		}
	}
}
