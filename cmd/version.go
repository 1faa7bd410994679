package cmd

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the release version, set at link time:
//
//	go build -ldflags "-X squeeze/cmd.version=v0.1.0"
//
// When empty, the module version from the build info is used, or "dev".
var version string

// versionInfo is what "squeeze version" reports.
type versionInfo struct {
	Version    string `json:"version"`
	Go         string `json:"go"`
	Commit     string `json:"commit"`
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

// buildVersion collects the version and the VCS stamp go build records.
func buildVersion() versionInfo {
	info := versionInfo{Version: version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if ok && info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.time":
				info.CommitTime = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String formats the version for people: "squeeze dev (commit 1a2b3c4d5e6f, modified) go1.26.8 linux/amd64".
func (v versionInfo) String() string {
	commit := v.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if v.Modified {
		commit += ", modified"
	}
	return fmt.Sprintf("squeeze %s (commit %s) %s %s/%s", v.Version, commit, v.Go, v.OS, v.Arch)
}

func newVersionCommand(g *globalOptions, s streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Long: `Print squeeze's version, the commit it was built from (from the VCS
information go build records) and the Go version. With --json, print them as
one JSON object: version, go, commit, commit_time, modified, os, arch.`,
		Args: exactArgs(0, "version takes no arguments"),
		RunE: func(*cobra.Command, []string) error {
			return runVersion(g.JSON, s)
		},
	}
}

// runVersion prints the version as text or JSON.
func runVersion(asJSON bool, s streams) error {
	info := buildVersion()
	if asJSON {
		return json.NewEncoder(s.Out).Encode(info)
	}
	_, err := fmt.Fprintln(s.Out, info)
	return err
}
