package splice

// JournalFile is the journal's name in a state directory.
const JournalFile = "journal.json"

// ReadPatches reads the journal in stateDir without taking its lock, as
// LiveSummary does (the journal is replaced atomically, so a reader sees a
// whole one), and returns a copy of every patch it records, in journal
// order. A state directory without a journal has none. Metrics read the
// host's state this way at scrape time, so that patches applied by the
// command line show as well as those applied by the agent.
func ReadPatches(stateDir string) ([]Patch, error) {
	journalPath, _ := statePaths(stateDir)
	j := &journal{}
	if _, err := loadJSON(journalPath, j, 16<<20); err != nil {
		return nil, err
	}
	out := make([]Patch, 0, len(j.Patches))
	for _, p := range j.Patches {
		out = append(out, *p)
	}
	return out, nil
}
