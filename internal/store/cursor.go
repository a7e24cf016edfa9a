package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrBadCursor is returned for a page cursor this store did not hand out.
var ErrBadCursor = errors.New("invalid page cursor: pass the \"next\" value of the previous page unchanged")

// encodeCursor turns where a page ended into an opaque, URL-safe token.
func encodeCursor(key any) (string, error) {
	b, err := json.Marshal(key)
	if err != nil {
		return "", fmt.Errorf("encode page cursor: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// decodeCursor reads a token from encodeCursor into key, strictly.
func decodeCursor(token string, key any) error {
	if len(token) > 1024 {
		return ErrBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return ErrBadCursor
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(key); err != nil {
		return ErrBadCursor
	}
	if dec.More() {
		return ErrBadCursor
	}
	return nil
}
