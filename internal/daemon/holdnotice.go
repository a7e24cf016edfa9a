package daemon

import "time"

// HoldNotice announces that a uid was put on hold or released, whoever did
// it (a threshold, an administrator through the CLI, the API or the web UI,
// or the hold's own expiry). The webhook and the notify command receive it.
type HoldNotice struct {
	// Event is enforce.ActionHeld or HoldReleased.
	Event string    `json:"event"`
	UID   uint32    `json:"uid"`
	User  string    `json:"user"`
	Since time.Time `json:"since"`
	// Until is when the hold ends by itself; zero means until released.
	Until  time.Time `json:"until,omitzero"`
	Reason string    `json:"reason"`
	// By names who or what held or released: an account ("cli:root",
	// "web:admin") or the threshold ("hold-after 10/1m").
	By string `json:"by"`
	// Count is the number of attempts that triggered an automatic hold.
	Count int64 `json:"count,omitempty"`
}

// HoldReleased is the Event of a HoldNotice for a hold that ended.
const HoldReleased = "released"
