package splice

// SetMigrateStep sets the hook the migration calls after each step.
func SetMigrateStep(f func(path string) error) { migrateStep = f }
