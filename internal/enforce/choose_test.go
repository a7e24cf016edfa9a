package enforce_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
)

func TestChoose(t *testing.T) {
	unsupported := fmt.Errorf("no cgroup2 mount: %w", enforce.ErrNotSupported)
	tests := []struct {
		name      string
		requested string
		failProbe map[string]error // candidate name -> its probe's error
		explicit  string           // a candidate auto must not choose
		// want is the chosen backend's name, "" for an error containing wantErr.
		want       string
		wantReason string
		wantErr    []string
		// wantProbed lists the candidates probed, in order.
		wantProbed []string
	}{
		{
			name: "auto takes the first candidate whose probe passes", requested: "auto",
			want: "bpf", wantReason: "auto: bpf probe passed", wantProbed: []string{"bpf"},
		},
		{
			name: "auto falls back in order past a failing probe", requested: "auto",
			failProbe: map[string]error{"bpf": unsupported},
			want:      "nft", wantReason: "auto: nft probe passed", wantProbed: []string{"bpf", "nft"},
		},
		{
			name: "auto with every probe failing names each reason", requested: "auto",
			failProbe:  map[string]error{"bpf": unsupported, "nft": errors.New("netlink: operation not permitted")},
			wantErr:    []string{"no enforcement backend works on this host", "bpf: no cgroup2 mount", "nft: netlink: operation not permitted"},
			wantProbed: []string{"bpf", "nft"},
		},
		{
			name: "auto skips an explicit-only backend without probing it", requested: "auto", explicit: "bpf",
			want: "nft", wantReason: "auto: nft probe passed", wantProbed: []string{"nft"},
		},
		{
			name: "auto never falls back to an explicit-only backend", requested: "auto", explicit: "bpf",
			failProbe:  map[string]error{"nft": unsupported},
			wantErr:    []string{"no enforcement backend works on this host", "nft: no cgroup2 mount"},
			wantProbed: []string{"nft"},
		},
		{
			name: "an explicit-only backend is used when named", requested: "bpf", explicit: "bpf",
			want: "bpf", wantReason: "requested explicitly", wantProbed: []string{"bpf"},
		},
		{
			name: "explicit name probes only that backend", requested: "nft",
			want: "nft", wantReason: "requested explicitly", wantProbed: []string{"nft"},
		},
		{
			name: "explicit name is not replaced by a better candidate", requested: "nft",
			failProbe:  map[string]error{"nft": unsupported},
			wantErr:    []string{"backend nft cannot be used here", "no cgroup2 mount"},
			wantProbed: []string{"nft"},
		},
		{
			name: "explicit name skips a failing better candidate", requested: "nft",
			failProbe: map[string]error{"bpf": unsupported},
			want:      "nft", wantReason: "requested explicitly", wantProbed: []string{"nft"},
		},
		{
			name: "unknown name lists the choices and probes nothing", requested: "iptables",
			wantErr: []string{`unknown backend "iptables": use auto, bpf, nft`},
		},
		{
			name: "empty name is unknown", requested: "",
			wantErr: []string{`unknown backend "": use auto, bpf, nft`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bpf, nft := fake.New("bpf"), fake.New("nft")
			for _, b := range []*fake.Backend{bpf, nft} {
				if err := tt.failProbe[b.Name()]; err != nil {
					b.FailProbe(err)
				}
				if b.Name() == tt.explicit {
					d := b.Describe()
					d.ExplicitOnly = true
					b.SetDescription(d)
				}
			}
			got, reason, err := enforce.Choose(context.Background(), tt.requested, []enforce.Backend{bpf, nft})
			var probed []string
			for _, b := range []*fake.Backend{bpf, nft} {
				for _, c := range b.Calls() {
					if c == "probe" {
						probed = append(probed, b.Name())
					}
				}
			}
			if diff := cmp.Diff(tt.wantProbed, probed); diff != "" {
				t.Errorf("Choose(%q) probed (-want +got):\n%s", tt.requested, diff)
			}
			if tt.want == "" {
				if err == nil {
					t.Fatalf("Choose(%q) = %s, want an error", tt.requested, got.Name())
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Choose(%q) error = %q, want it to contain %q", tt.requested, err, w)
					}
				}
				if errors.Is(tt.failProbe["nft"], enforce.ErrNotSupported) && !errors.Is(err, enforce.ErrNotSupported) {
					t.Errorf("Choose(%q) error = %v, want it to wrap ErrNotSupported", tt.requested, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Choose(%q) = %v, want %s", tt.requested, err, tt.want)
			}
			if got.Name() != tt.want || reason != tt.wantReason {
				t.Errorf("Choose(%q) = %s, %q; want %s, %q", tt.requested, got.Name(), reason, tt.want, tt.wantReason)
			}
		})
	}
}

// TestSelectSaysWhyOthersWereNot: status shows, for each candidate not
// chosen, why: the probe error auto hit, that auto preferred a better one,
// or that another was named.
func TestSelectSaysWhyOthersWereNot(t *testing.T) {
	unsupported := fmt.Errorf("no cgroup2 mount: %w", enforce.ErrNotSupported)
	tests := []struct {
		name      string
		requested string
		failProbe map[string]error
		explicit  string
		want      map[string]string // Choice.Notes()
	}{
		{
			name: "auto prefers bpf where it works", requested: "auto",
			want: map[string]string{"bpf": "auto: bpf probe passed", "nft": "auto prefers bpf, which works here"},
		},
		{
			name: "auto falls back to nft with bpf's reason", requested: "auto",
			failProbe: map[string]error{"bpf": unsupported},
			want: map[string]string{
				"bpf": "auto could not use it: no cgroup2 mount: not supported on this host",
				"nft": "auto: nft probe passed",
			},
		},
		{
			name: "explicit nft says it was named", requested: "nft",
			want: map[string]string{"nft": "requested explicitly", "bpf": "the restriction was enabled with backend nft"},
		},
		{
			name: "an explicit-only backend says so", requested: "auto", explicit: "bpf",
			want: map[string]string{"nft": "auto: nft probe passed", "bpf": "auto does not choose it: use it with enable --backend bpf"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bpf, nft := fake.New("bpf"), fake.New("nft")
			for _, b := range []*fake.Backend{bpf, nft} {
				if err := tt.failProbe[b.Name()]; err != nil {
					b.FailProbe(err)
				}
				if b.Name() == tt.explicit {
					d := b.Describe()
					d.ExplicitOnly = true
					b.SetDescription(d)
				}
			}
			c, err := enforce.Select(context.Background(), tt.requested, []enforce.Backend{bpf, nft})
			if err != nil {
				t.Fatalf("Select(%q) = %v", tt.requested, err)
			}
			if diff := cmp.Diff(tt.want, c.Notes()); diff != "" {
				t.Errorf("Select(%q).Notes() (-want +got):\n%s", tt.requested, diff)
			}
		})
	}
}
