package cli

import (
	"strings"

	"github.com/spf13/cobra"
)

// suggestionDistance is how many typing mistakes a suggestion may correct:
// two covers a swapped pair of letters ("enabel" for "enable").
const suggestionDistance = 2

// didYouMean is " (did you mean 'enable'?)" for a mistyped subcommand of
// cmd, or "" when nothing is near. Cobra's own suggestions never run here:
// the Args hooks take unknown commands first, so that they exit 2.
func didYouMean(cmd *cobra.Command, typed string) string {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = suggestionDistance
	}
	s := cmd.SuggestionsFor(typed)
	// A command the typed word begins is the likelier meaning ("stat" is
	// "status", not "set").
	var prefixed []string
	for _, name := range s {
		if strings.HasPrefix(name, strings.ToLower(typed)) {
			prefixed = append(prefixed, name)
		}
	}
	if len(prefixed) > 0 {
		s = prefixed
	}
	if len(s) == 0 {
		return ""
	}
	return " (did you mean '" + strings.Join(s, "' or '") + "'?)"
}
