package daemon

import (
	"context"

	"github.com/smtpguard/smtpguard/internal/store"
)

// eventStore is where the recorder writes aggregates of blocked attempts:
// the engine, since the store it hands out only reads.
type eventStore interface {
	RecordEvents(ctx context.Context, events []store.Event) error
}
