export { JobTracker, StatusUpdate, JobRecord } from './index';
export const FINAL: string[];
